"""framecast auth: every MediaMTX access decision, the JWT signing keys, the JWKS and token issuance."""
