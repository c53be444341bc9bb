"""gunicorn settings of the floor and the peer: none but what running beside others needs.

gunicorn 24+ opens one control socket per user by default, which every gunicorn of the machine
would fight over (config/gunicorn.conf.py says more); the floor and the peer use none.
"""

control_socket_disable = True
