"""Drivers that bring real time and real packets to the sans-I/O core: TUN devices, the
simulated network, pcap and JSON-lines event-log writers.
"""
