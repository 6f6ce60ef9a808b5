"""
Tests for twisted_chat.wire: the line language shared by the server and the client.
"""
