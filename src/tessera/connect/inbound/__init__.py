"""Inbound messages (CON-10): MO storage, opt-out keywords, keyword auto-replies, webhooks."""
