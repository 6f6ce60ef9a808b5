"""
Tests for twisted_chat.core: the chat service and its collaborators.
"""
