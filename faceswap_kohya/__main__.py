from faceswap_kohya.cli.main import main

main()
