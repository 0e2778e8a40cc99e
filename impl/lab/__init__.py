"""Network-namespace labs on 198.18.0.0/15 and fd00::/8: namespaces, links, addresses,
control and counters (nstat) of the Linux kernel peer. Everything created is removed again,
also when the caller fails.
"""
