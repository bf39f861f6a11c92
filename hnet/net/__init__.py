"""hnet/net"""
