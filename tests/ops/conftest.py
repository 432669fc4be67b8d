from gevent import monkey

# Some tests serve stand-in Matomos on gevent in this process while ops code calls them with blocking clients.
monkey.patch_all()
