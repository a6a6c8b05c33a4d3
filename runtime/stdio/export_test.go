package stdio

// ServeSpawner and ServeSpawnerAt, for the package's external tests.
var (
	ServeSpawner   = serveSpawner
	ServeSpawnerAt = serveSpawnerAt
)
