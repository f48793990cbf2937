def analyse(tree, lines):
    return None
