"""Where state lives: the Store protocol, Redis/Valkey, the embedded server, the memory store."""
