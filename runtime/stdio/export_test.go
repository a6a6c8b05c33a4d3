package stdio

// ServeSpawner, for the package's external tests.
var ServeSpawner = serveSpawner
