"""hnet/core/quic"""
