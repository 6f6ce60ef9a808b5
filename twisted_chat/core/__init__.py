"""
The chat service and its boundaries: rooms, members, nicknames, presence,
history and moderation, with no sockets. Front-ends, stores and the cluster
meet it through the interfaces of L{twisted_chat.core.interfaces}.
"""
