//! Native runs of the state machine through the fake host.
