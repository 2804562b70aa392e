module mcpxdiff/godecode

go 1.19
