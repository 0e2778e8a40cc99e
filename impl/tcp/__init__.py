"""Sans-I/O TCP subflow (RFC 9293): sequence space, buffers, RTO (RFC 6298), loss
recovery, flow control. Segments and an explicit `now` in; segments, timers and events out.
MPTCP attaches its options through a small hook interface; this package never imports
`impl.mptcp`. Not built yet (issue: userspace TCP subflows).
"""
