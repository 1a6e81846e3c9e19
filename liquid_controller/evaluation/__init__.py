"""Layer 6: closed-loop evaluation of models in the embedded simulator (through the runtime Controller,
as the node runs it), comparison of several models, and the README results section built from it."""
