package protocol

// ScanHead exposes the fast path of PeekHead to the fuzz target.
var ScanHead = scanHead
