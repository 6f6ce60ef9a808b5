"""
Tests for twisted_chat.client: the terminal client twisted-chat.
"""
