"""The staff admin: the site every module's `admin.py` registers with (`site`) and the way every
list shows ids, money, times, bookstores and errors (`columns`).

It sits below the business modules, so each of them can add its lists, its dashboard panels and
its blocks of an order's page without importing another module; and above `tenants`, whose
scoping, users and login throttle it uses.
"""
