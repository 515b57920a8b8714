"""A queue shared by a team (SPEC section 12): the socket protocol and the rules both sides share."""
