"""SMPP 3.4: the bundled SMSC simulator (:mod:`.server`) and the carrier-facing ESME (:mod:`.client`)."""
