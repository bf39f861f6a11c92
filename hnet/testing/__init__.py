"""hnet/testing"""
