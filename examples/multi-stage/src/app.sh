# The application: prints a greeting.
name=world
echo "hello, $name"
