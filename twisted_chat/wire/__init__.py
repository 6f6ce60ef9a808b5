"""
The line chat's language, spoken by both ends: the server's text mode (TCP
line chat, WebSocket and Socket.IO text mode) and the terminal client
C{twisted-chat}.

  - L{twisted_chat.wire.lines}: framing a byte stream into lines (LF or
    CRLF, a maximum length, over-long lines discarded as they arrive);
  - L{twisted_chat.wire.commands}: the slash-command grammar (names,
    arguments, usage errors) and the help;
  - L{twisted_chat.wire.render}: how events look as lines.

Nothing here knows the chat service, sockets or the reactor.
"""
