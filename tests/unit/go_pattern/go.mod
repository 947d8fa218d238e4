module patterncheck

go 1.26.0
