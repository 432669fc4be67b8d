from gevent import monkey

# The receiver serves on gevent; the tests' blocking clients must cooperate with it in one process.
monkey.patch_all()
