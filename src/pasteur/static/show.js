// placeholder: the browser module lands with the browser branch
