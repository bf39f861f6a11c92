"""hns: Hyperware Name System names, Hypermap records and record sources. Imports nothing of ours."""
