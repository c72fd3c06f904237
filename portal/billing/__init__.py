"""Pure billing domain: money, tax, discounts, the invoice state machine,
billing-cycle math, dunning and reminder policy.

Imports neither flask, nor stripe, nor the database session, so every rule
here is tested as plain functions. (Filled in from the invoicing issue on.)
"""
