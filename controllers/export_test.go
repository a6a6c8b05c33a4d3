package controllers

// AgentStatusInterval is agentStatusInterval, for the package's envtest tests.
const AgentStatusInterval = agentStatusInterval
