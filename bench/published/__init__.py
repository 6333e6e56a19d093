"""The GSMorph paper's published Table 1 and Table 2 as CSV data (see README.md here)."""
