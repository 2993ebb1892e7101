"""Voice building blocks (database-free): espeak-ng TTS for verification codes, gateway protocol."""
