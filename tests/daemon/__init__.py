"""
Tests for twisted_chat.daemon and tap.py: twistd chat's options, service tree, operations and workers.
"""
