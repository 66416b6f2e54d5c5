"""The web console (design §8b): static files attached to `_design/after`, and `after console`.

console.html, console.js and console.css are plain files with no build step; install.py
turns them into the design document's attachments and sets up who may do what; serve.py
is `after console`, the same files on loopback with a same-origin proxy to CouchDB.
"""
