"""Congestion control behind one small interface: per-subflow Reno and CUBIC, and the
coupled algorithms (LIA RFC 6356, OLIA, BALIA). Not built yet.
"""
