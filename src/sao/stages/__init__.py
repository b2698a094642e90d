"""One module per stage. Each reads rows, writes rows, and resumes by row id."""
