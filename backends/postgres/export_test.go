package postgres

// ClaimSQL is the claim's statement, for plan tests.
var ClaimSQL = claimSQL
