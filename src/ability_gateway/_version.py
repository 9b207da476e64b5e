"""The package's version, in a module of its own: the client (its User-Agent) and the
package's top level both read it, and neither needs to import the other for it."""

__version__ = "0.1.0"
