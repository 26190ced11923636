"""Demo data (`seed_demo`): a bookstore, its users and a stocked catalog, made through the services.

It sits beside `config` at the top: it may use any module's services, and nothing imports it.
"""
