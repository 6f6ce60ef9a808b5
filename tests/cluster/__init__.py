"""
Tests for twisted_chat.cluster: the bus protocol and the Redis transport and store.
"""
