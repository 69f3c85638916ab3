"""framecast contracts: the messages, subjects and state machine every service shares, the
typed NATS bus that carries them, the state store, and the errors a caller can act on."""
