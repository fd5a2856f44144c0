"""Accounts: users, roles, profiles, credentials and the registration saga. Plain Python + asyncpg."""
