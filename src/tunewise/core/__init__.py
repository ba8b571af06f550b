"""What every stage shares and imports, never the reverse: errors, findings, the run directory,
one console, file helpers and the device's precision. Nothing here imports another tunewise
package, so any module may import it."""
