"""Data sets of the study: the toy matrices of Task 1, the movie ratings of section 2.1, CryptoPunks."""
