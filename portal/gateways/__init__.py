"""Payment gateways behind one interface: ``stripe.py`` (the only module that
imports ``stripe``) and ``sandbox.py`` (test mode, moves no money).
(Filled in from the payments issue on.)
"""
