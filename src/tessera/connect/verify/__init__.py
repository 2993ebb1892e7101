"""Verification codes (CON-7): send a one-time code by SMS, voice or email and check it."""
