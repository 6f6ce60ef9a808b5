"""
Test code shared by several test modules: the real daemon and redis-server
as subprocesses (daemon), the in-memory network (harness), and the fakes and
clients the tests use.
"""
