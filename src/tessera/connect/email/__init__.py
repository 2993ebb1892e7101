"""Email building blocks (database-free): compose, DKIM, pooled SMTP sending, DSN parsing, sink."""
