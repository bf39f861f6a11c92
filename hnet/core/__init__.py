"""hnet/core"""
