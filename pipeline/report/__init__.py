"""What the ledger says, for people: aggregation, terminal tables, the HTML review page.
Reads ledgers; never imports the engine.
"""
