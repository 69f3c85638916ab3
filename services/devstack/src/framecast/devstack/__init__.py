"""framecast dev stack: ``framecast up`` runs NATS, MediaMTX and every service on one machine."""
