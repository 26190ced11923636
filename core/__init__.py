"""The kernel every module shares that is not about events: domain errors, the DRF exception
handler and HTTP `Idempotency-Key` handling. It imports no other ShelfWise package."""
