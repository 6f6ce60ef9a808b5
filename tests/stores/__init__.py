"""
Tests for twisted_chat.stores: the message stores.
"""
