"""ssltheory.theory"""
